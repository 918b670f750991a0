"""Drawing meshes, boxes and joints over frames (software rasteriser, optional pyrender)."""
