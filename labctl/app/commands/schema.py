"""``labctl schema``: JSON Schemas of protocol and station files, for editors.

The schemas come from the same pydantic models that validate the files (routine parameter
declarations, the station schema), so an editor flags what ``labctl run`` would refuse —
unknown keys, wrong types, values out of range — while typing. Hook them into VS Code's
YAML extension (redhat.vscode-yaml) with a first line in the YAML file::

    # yaml-language-server: $schema=../schemas/protocol.schema.json

or for whole folders in ``.vscode/settings.json`` (``"yaml.schemas"``); see docs/runs.md.
"""

from __future__ import annotations

import argparse
import json

NAME = "schema"
HELP = "write JSON Schemas of protocol and station files (for editors)"
FILES = ("protocol.schema.json", "station.schema.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default="schemas",
                   help="directory to write protocol.schema.json and station.schema.json "
                   "(default: ./schemas)")


def main(args: argparse.Namespace) -> int:
    from labctl.core.output_paths import check_writable_dir
    from labctl.core.station_schema import station_json_schema
    from labctl.runs.protocol import protocol_json_schema
    from labctl.runs.runner import load_registry

    out = check_writable_dir(args.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    schemas = (protocol_json_schema(load_registry()), station_json_schema())
    for name, schema in zip(FILES, schemas, strict=True):
        path = out / name
        path.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(path)
    return 0
