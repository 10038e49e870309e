"""edgeldm.calibration — prompt sets, sampler-trajectory capture, calibration readers, the synthetic scene dataset."""
