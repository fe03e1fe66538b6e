"""The tree's layout: the one table that maps every DICOMweb URL to its stored name
(`urls`), names of what else lives in a tree, writing resources by that table and
reading a tree back through its store."""
