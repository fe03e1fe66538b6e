"""What is published per instance, as bytes: the DICOM JSON model (PS3.18 F.2), raw
value decoding, multipart frame and bulk data parts, the `info` record, deduplicated
extracts, reproducible gzip."""
