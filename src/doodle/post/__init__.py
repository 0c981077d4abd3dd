"""Post-processing and data improvement: ensembles and stacking (`ensemble`), balancing of
class counts (`balance`), pseudo-labels (`pseudo`) and cleaning of training data (`clean`)."""
