"""Ready distribution families: users of ``fit``, never special cases inside it."""
