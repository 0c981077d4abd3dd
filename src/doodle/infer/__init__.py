"""Inference: predictions of a checkpoint (`predict`), test-time views (`tta`), saved class
probabilities (`probabilities`) and ONNX export with its preprocessing (`export`)."""
