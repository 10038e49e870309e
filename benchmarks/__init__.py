"""edgeldm.benchmarks — timing primitive, device fingerprint, quality metrics, history, regression gate, report."""
