"""The container engine: records, monitor, operations, networks, volumes and output formatting."""
