"""Image generators for ReGL (``algorithms/regl.py``), one module each behind the small interface of
``base``: classes and counts in, labelled images in the dataset's normalised space out, seeded.

- ``oracle``: real held-out training images (the server's reserve): what a perfect generator could give;
- ``proxy``: a small class-conditional VAE trained once on the server from the reserve;
- ``stable_diffusion``: Stable Diffusion through ``diffusers`` from local weights, optionally adapted to
  each client's data with LoRA (``peft``); ``tiny_diffusion`` builds a random miniature of it offline.
"""
