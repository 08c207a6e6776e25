"""kink_privsep: the small root helper that programs XFRM for the kink daemon."""
