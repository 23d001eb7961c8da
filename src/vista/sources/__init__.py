"""Images -> activations: labelled image datasets, encoders, hooks and the extraction loop."""
