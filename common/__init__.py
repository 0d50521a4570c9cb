"""Framework-free data pipeline shared by the Keras and PyTorch implementations."""
