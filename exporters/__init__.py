"""edgeldm.exporters — torch -> ONNX / OpenVINO IR / Core ML, output validation, the bundle writer."""
