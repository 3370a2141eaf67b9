"""Sources of frames and the sensor model that turns a scene into a RAW Bayer frame."""
