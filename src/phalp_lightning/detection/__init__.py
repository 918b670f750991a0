"""Person detectors behind one interface, and crop construction."""
