"""trigan training: datasets, discriminator, losses, the loop, runs."""
