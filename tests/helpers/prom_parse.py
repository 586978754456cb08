#!/usr/bin/python3
"""Reads the Prometheus text format on stdin and prints what the official
Python client's parser (Debian's python3-prometheus-client) made of it, as
JSON: {"families": [{"name", "type", "documentation", "samples": [{"name",
"labels", "value"}]}]}, or {"error": "..."} when it does not parse."""
import json
import math
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print(json.dumps({"error": "python3-prometheus-client is missing (make deps)"}))
    sys.exit(0)

text = sys.stdin.read()
try:
    fams = []
    for f in text_string_to_metric_families(text):
        fams.append({
            "name": f.name, "type": f.type, "documentation": f.documentation,
            "samples": [{"name": s.name, "labels": s.labels,
                         "value": "+Inf" if math.isinf(s.value) else s.value}
                        for s in f.samples]})
    print(json.dumps({"families": fams}))
except Exception as e:  # the parser raises ValueError and friends
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
