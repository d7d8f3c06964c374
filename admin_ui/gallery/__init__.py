"""Members' gallery: their own images on the web, behind "Log in with Discord", beside the operator's panel."""
