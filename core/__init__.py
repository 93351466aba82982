"""trigan core: everything a trained model needs at inference."""
