"""pyimg's container engine: docker's container verbs, daemonless, as podman is built.

Rooms (each imports only the ones listed before it, and imagetool's lower layers):

  humanize   docker's human strings (durations, ps STATUS/PORTS/COMMAND, sizes) and their parsers
  template   the Go text/template subset behind every --format
  records    container records, ids, names and locks; where a store keeps its containers (ROOT, RUN)
  spec       docker run's options checked, and applied to the bundle's config.json
  volumes    named and anonymous volumes (ROOT/volumes), filled from the image on first use
  network    bridge networks on netavark + aardvark-dns: IPAM, network namespaces, published ports
  monitor    conmon, one per running container: it holds stdio, writes the log, records the exit
  logs       reading the log conmon writes
  ops        the operations (Engine): create, start, stop, kill, rm, wait, exec's process, cleanup
  attach     the operations that hold the caller's terminal: run/start attached, exec, logs
  copy       cp in both directions, confined to the container's rootfs
  present    what the verbs print: ps/inspect/port/top/stats/version/info, volume and network verbs

imagetool.cli_engine is the command line over them: one thin function per verb.
A Docker Engine API service would sit on ops the same way.
"""
