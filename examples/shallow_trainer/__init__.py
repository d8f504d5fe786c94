"""An example trainer of one's own for eegcache: braindecode's ShallowFBCSPNet (see train.py)."""
