"""Receiving instances over the network into a tree: `ingest.Ingest` (the seam every
receiver uses) and the DICOM C-STORE listener (`scp`)."""
