"""Evaluation: the competition's metrics (`metrics`), the HTML report of a model or a predictions
file (`report`) and early guessing on partial drawings (`early`)."""
