"""Atari: ALE environment and object substrates, ESP neuroevolution, GRUSM transfer, batched policy."""
