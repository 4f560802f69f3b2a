"""The learned image model: masks, NOCS maps and viewpoints from a detection crop.

Everything it learns comes from our own renders of procedural training cars (never a real
label). One job per module:

* :mod:`~autolabel.image.viewpoint`: KITTI's observation angle and its bins + residual code;
* :mod:`~autolabel.image.crops`: detection windows and resampling images into square crops;
* :mod:`~autolabel.image.cars`: the pool of procedural cars, ray-cast in their object frame,
  with their surface materials and shape codes;
* :mod:`~autolabel.image.appearance`: random light, paint and camera artefacts;
* :mod:`~autolabel.image.backgrounds`: road scenes, random textures and user images behind;
* :mod:`~autolabel.image.generate`: one training crop with its targets, from a seed;
* :mod:`~autolabel.image.shards`: crops cached on disk as npz shards;
* :mod:`~autolabel.image.network`: the small CNN;
* :mod:`~autolabel.image.train`: losses, the training loop, checkpoints and the weights file;
* :mod:`~autolabel.image.sheet`: contact sheets of crops and predictions.
"""
