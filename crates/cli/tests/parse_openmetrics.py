"""Read an OpenMetrics text exposition on stdin with Prometheus's own parser
(prometheus_client) and print its samples as JSON: [{"name", "labels", "value", "type"}].
A malformed exposition fails here, as it would in Prometheus."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append(
            {"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}
        )
json.dump(samples, sys.stdout)
