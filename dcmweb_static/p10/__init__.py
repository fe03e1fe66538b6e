"""Reading DICOM Part 10 bytes: file meta, the data set (pydicom, wrapped in one place),
the Pixel Data layout and frame boundaries, transfer syntaxes, UID checks. Knows nothing
of JSON, multipart or storage."""
