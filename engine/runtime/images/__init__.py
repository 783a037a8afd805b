"""Images in and out: client inputs, guarded fetches, transforms, results for the client."""
