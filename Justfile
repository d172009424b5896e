# Recipes for people and CI. `./setup.sh` installs everything first.

set shell := ["bash", "-euo", "pipefail", "-c"]

py := justfile_directory() / ".venv/bin/python"

# The main job end to end: a local registry, pyimg pull + unpack, pyrunc run.
demo:
    {{py}} scripts/demo.py

# The whole test suite (unit, integration, conformance).
test *ARGS:
    {{py}} -m pytest -q -p no:cacheprovider {{ARGS}} tests

unit *ARGS:
    {{py}} -m pytest -q -p no:cacheprovider {{ARGS}} tests/unit

# Regenerate the fast config validator from specs/config-schema.json.
gen-validator:
    {{py}} scripts/gen_validator.py

# Run already-built runtime-tools validation programs from DIR against pyrunc.
conformance-runtime-tools DIR="":
    {{py}} scripts/runtime_tools.py "{{DIR}}"

# Benchmarks against runc, crun, skopeo and umoci (prints ratios).
bench *ARGS:
    {{py}} bench/run.py {{ARGS}}
