"""Study and series level files from the instances of a store: series and study
metadata, the QIDO-RS index files and QIDO query matching."""
