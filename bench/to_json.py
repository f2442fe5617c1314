#!/usr/bin/env python3
"""Rewrite a combined access log as Caddy or Traefik JSON, one line for one.

usage: bench/to_json.py {caddy-json,traefik-json,nginx-json} SRC DST

The shapes are scripts/measure_corpus.py's (``to_caddy``, ``to_traefik``,
``to_nginx_json``), imported from there so the benchmark reads exactly the lines the
corpus measurement does. Prints the converter's counts as JSON.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import measure_corpus  # noqa: E402

if len(sys.argv) != 4 or sys.argv[1] not in measure_corpus.CONVERTERS:
    sys.exit(__doc__.strip().splitlines()[2])
print(json.dumps(measure_corpus.convert_log(sys.argv[2], sys.argv[3], sys.argv[1])))
