"""Shengtu (生图): a points-billed AI image generation platform."""

__version__ = "0.1.0"
