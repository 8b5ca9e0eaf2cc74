"""data_prep: raw photos and label files to aligned, sharded TFRecords with a manifest."""
