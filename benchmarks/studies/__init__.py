"""Figure studies: one-off measurements behind the tables of docs/results.md (LD-Pruner's cost and recovery,
quantization latency, distillation speed, runtime overhead). Each is ``python -m
edgeldm.benchmarks.studies.<name> --help``; they use the harness's timing primitive (``benchmarks.timing``)
and are not part of the product's API."""
