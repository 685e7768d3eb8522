"""Datasets: Urbansas (real and synthetic, one loader), VGG-SS and Flickr-SoundNet annotations."""
