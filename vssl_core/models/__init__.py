"""Models: RCGrad and the FlowGrad family (and later LVS/HTF, Oya et al.)."""
