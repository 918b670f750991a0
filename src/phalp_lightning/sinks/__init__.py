"""Writers of tracking results: PHALP pkl, npz, MOT text, rendered video."""
