"""An example third-party detector package for deepfake-forensics (see README.md)."""
