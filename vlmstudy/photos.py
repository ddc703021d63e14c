"""Real photographs: five public-domain / CC0 photos with hand-written captions, labels and questions.

Every model notebook ends with an "On a real photo" section that runs these through its model.
In ``tiny`` mode the stand-ins only know ShapesWorld, so their answers show what a model does
outside the world it was trained on; with ``VLMSTUDY_MODE=hub`` the real checkpoints answer.
Nothing here judges the answers: the hand-written truth is printed beside them, to read.

::

    from vlmstudy import photos
    cat = photos.real_photo("chelsea")       # a RealPhoto: .image (PIL), .caption, .labels, .questions ...
    rows = photos.zero_shot(clip, processor) # each photo against its own candidate labels
    fig = photos.show_predictions(rows)
    photos.question_table({"BLIP-VQA": "blip-vqa"})   # every photo's questions, answered

The pictures are small JPEG copies (longest side 384 px) of photographs that scikit-image 0.26
bundles in ``skimage.data``; ``tools/make_photos.py`` makes them and ``LICENSES.md`` next to them
from :data:`CATALOGUE` (which records each photo's source, author and licence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError, ImageError

__all__ = ["RealPhoto", "PhotoPrediction", "CATALOGUE", "PHOTO_NAMES", "photos_dir", "real_photos", "real_photo",
           "zero_shot", "show_predictions", "caption_table", "question_table"]

#: The prompt around every zero-shot label (CLIP's usual one).
TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class _Entry:
    """What the course knows about one photo (before its image is loaded)."""

    name: str
    source_file: str          # the file inside scikit-image's skimage/data/
    source_sha256: str        # of that file in scikit-image 0.26.0 (tools/make_photos.py checks it)
    skimage_function: str
    title: str
    author: str
    licence: str
    origin: str               # where scikit-image says it got the photo
    caption: str
    label: str
    labels: tuple[str, ...]
    questions: tuple[tuple[str, str], ...]
    things: tuple[str, ...]   # short texts naming parts of the picture, for attention maps (notebook 09)


#: One entry per shipped photo; the licence facts are quoted from scikit-image 0.26's docstrings.
CATALOGUE: tuple[_Entry, ...] = (
    _Entry(
        name="chelsea", source_file="chelsea.png",
        source_sha256="596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        skimage_function="skimage.data.chelsea", title="Chelsea the cat",
        author="Stefan van der Walt", licence="CC0 (no copyright restrictions)",
        origin="scikit-image sample data (CC0 by the photographer)",
        caption="a close-up of a tabby cat's face with green eyes",
        label="cat", labels=("dog", "fox", "cat", "tiger", "rabbit"),
        questions=(("what animal is this?", "cat"), ("what colour are its eyes?", "green"),
                   ("how many eyes can you see?", "2")),
        things=("the cat's eye", "the cat's nose", "the cat's ear"),
    ),
    _Entry(
        name="coffee", source_file="coffee.png",
        source_sha256="cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        skimage_function="skimage.data.coffee", title="Coffee cup",
        author="Rachel Michetti (courtesy of Pikolo Espresso Bar)", licence="CC0 (no copyright restrictions)",
        origin="scikit-image sample data (CC0 by the photographer)",
        caption="a red cup of coffee with a spoon on a red saucer, on a wooden table",
        label="cup of coffee", labels=("glass of wine", "cup of coffee", "bowl of soup", "teapot", "plate of food"),
        questions=(("what is in the cup?", "coffee"), ("what colour is the saucer?", "red"),
                   ("how many spoons are there?", "1")),
        things=("the coffee", "the spoon", "the wooden table"),
    ),
    _Entry(
        name="astronaut", source_file="astronaut.png",
        source_sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        skimage_function="skimage.data.astronaut", title="Astronaut Eileen Collins",
        author="NASA", licence="public domain (no known copyright restrictions)",
        origin="NASA Great Images database, https://flic.kr/p/r9qvLn",
        caption="a smiling astronaut in an orange spacesuit beside her helmet, with an American flag "
                "and a model of the space shuttle behind her",
        label="astronaut", labels=("firefighter", "doctor", "chef", "astronaut", "soldier"),
        questions=(("what colour is her suit?", "orange"), ("is she smiling?", "yes"),
                   ("what flag is behind her?", "american")),
        things=("the face", "the helmet", "the flag", "the space shuttle"),
    ),
    _Entry(
        name="rocket", source_file="rocket.jpg",
        source_sha256="c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        skimage_function="skimage.data.rocket", title="Falcon 9 with DSCOVR on the launch pad",
        author="SpaceX", licence="public domain (released by SpaceX)",
        origin="SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/",
        caption="a white rocket on its launch pad at dusk, between tall towers, with bright lights at its base",
        label="rocket", labels=("lighthouse", "airplane", "bridge", "ship", "rocket"),
        questions=(("what is this?", "rocket"), ("what colour is the sky?", "blue"),
                   ("are the lights on?", "yes")),
        things=("the rocket", "the tower", "the lights"),
    ),
    _Entry(
        name="camera", source_file="camera.png",
        source_sha256="b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        skimage_function="skimage.data.camera", title="Man with a camera",
        author="Lav Varshney", licence="CC0 (no copyright restrictions)",
        origin="scikit-image sample data (CC0 by the photographer)",
        caption="a black-and-white photo of a man looking through a camera on a tripod, on a lawn",
        label="man with a camera",
        labels=("man on a bicycle", "woman with an umbrella", "man with a camera", "dog on a lawn", "man playing golf"),
        questions=(("is this photo in colour?", "no"), ("what is the man looking through?", "camera"),
                   ("what is the camera standing on?", "tripod")),
        things=("the man", "the camera", "the tripod", "the sky"),
    ),
)

PHOTO_NAMES: tuple[str, ...] = tuple(e.name for e in CATALOGUE)


@dataclass(frozen=True)
class RealPhoto:
    """One real photograph and what a person wrote about it.

    image: RGB ``PIL.Image`` (longest side 384 px); caption: a hand-written description;
    label / labels: the right zero-shot label and the candidates it is among (``label`` in
    ``labels``, never first: a model that cannot tell the labels apart, and so ties, picks the
    first one, which must not look like a right answer); questions: ``(question, answer)`` pairs with short, VQA-style answers
    ("2", "yes", "orange"); things: texts naming parts of the picture; licence: one line.
    """

    name: str
    image: object
    caption: str
    label: str
    labels: tuple[str, ...]
    questions: tuple[tuple[str, str], ...]
    things: tuple[str, ...]
    licence: str

    def __repr__(self) -> str:
        w, h = self.image.size
        return f"RealPhoto({self.name!r}, {w}x{h}, {self.caption!r})"


def photos_dir():
    """The folder of the shipped photos (``assets/images/photos``, under ``VLMSTUDY_ASSETS``)."""
    from .settings import ASSETS_DIR

    return ASSETS_DIR / "images" / "photos"


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise ConfigError(f"A photo name must be a string, one of {', '.join(PHOTO_NAMES)} (got {type(name).__name__}).")
    key = name.strip().lower()
    for e in CATALOGUE:
        if e.name == key:
            return e
    raise ConfigError(f"There is no real photo called {name!r}; the course ships {', '.join(PHOTO_NAMES)}.")


def licence_line(entry: _Entry) -> str:
    return (f"{entry.title}: photo by {entry.author}, {entry.licence}; from scikit-image 0.26 "
            f"({entry.skimage_function}), originally {entry.origin}")


def real_photo(name: str) -> RealPhoto:
    """One photo by name (:data:`PHOTO_NAMES`: chelsea, coffee, astronaut, rocket, camera)."""
    from .images import load_image

    entry = _entry(name)
    path = photos_dir() / f"{entry.name}.jpg"
    if not path.is_file():
        raise ImageError(f"The photo {str(path)!r} is missing: restore it with `git checkout -- assets/images/photos` "
                         "(or rebuild it: python tools/make_photos.py).")
    return RealPhoto(name=entry.name, image=load_image(path), caption=entry.caption, label=entry.label,
                     labels=entry.labels, questions=entry.questions, things=entry.things,
                     licence=licence_line(entry))


def real_photos(names: Sequence[str] | None = None) -> list[RealPhoto]:
    """The shipped photos (all five, in :data:`PHOTO_NAMES` order, or those named)."""
    if isinstance(names, str):
        names = [names]
    return [real_photo(n) for n in (PHOTO_NAMES if names is None else names)]


def _photo_list(photos) -> list[RealPhoto]:
    if photos is None:
        return real_photos()
    if isinstance(photos, RealPhoto):
        return [photos]
    photos = list(photos)
    if not photos or not all(isinstance(p, RealPhoto) for p in photos):
        raise ConfigError("photos= must be RealPhoto records from photos.real_photos() (or None for all of them).")
    return photos


# ----------------------------------------------------------------------------- zero-shot


@dataclass(frozen=True)
class PhotoPrediction:
    """A dual encoder's zero-shot scores for one photo over its own ``labels``: ``probs`` (C,)
    (CLIP: a softmax, sums to 1; SigLIP: one sigmoid per label)."""

    photo: RealPhoto
    probs: object   # torch.Tensor (C,)

    @property
    def predicted(self) -> str:
        return self.photo.labels[int(self.probs.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probs.max())

    @property
    def truth_probability(self) -> float:
        return float(self.probs[self.photo.labels.index(self.photo.label)])


def zero_shot(model, processor, photos: Sequence[RealPhoto] | None = None,
              templates: Sequence[str] = (TEMPLATE,)) -> list[PhotoPrediction]:
    """Classify each photo among its own candidate labels with a dual encoder (CLIP or SigLIP):
    :func:`vlmstudy.contrastive.zero_shot` once per photo, since each has its own label set."""
    from . import contrastive

    out = []
    for photo in _photo_list(photos):
        probs = contrastive.zero_shot(model, processor, [photo.image], photo.labels, templates=templates,
                                      progress=False)[0]
        out.append(PhotoPrediction(photo, probs.detach().float().cpu()))
    return out


def show_predictions(predictions: Sequence[PhotoPrediction], cols: int | None = None, scale: float = 2.4):
    """The photos in a grid, each titled with the model's best label, its score and the truth."""
    from .plotting import show_images

    predictions = list(predictions)
    if not predictions or not all(isinstance(p, PhotoPrediction) for p in predictions):
        raise ConfigError("show_predictions takes the list that photos.zero_shot(...) returns.")
    titles = [f"{p.predicted} ({p.confidence:.2f}); truth: {p.photo.label} ({p.truth_probability:.2f})"
              for p in predictions]
    return show_images([p.photo.image for p in predictions], titles, cols=cols, scale=scale, wrap=30)


# ----------------------------------------------------------------------------- captions and answers


def _models(models) -> dict:
    """``{"column name": model}`` from a mapping, or from one model name / ``(model, processor)``."""
    if isinstance(models, Mapping):
        if not models:
            raise ConfigError("models= is empty: pass at least one model, e.g. {'BLIP-VQA': 'blip-vqa'}.")
        return {str(k): v for k, v in models.items()}
    if isinstance(models, str):
        return {models: models}
    if isinstance(models, (tuple, list)) and len(models) == 2 and hasattr(models[0], "generate"):
        return {type(models[0]).__name__: models}
    raise ConfigError("models= must be a model name ('blip-vqa'), a (model, processor) pair, or a mapping "
                      "{column name: model}.")


def caption_table(models, photos: Sequence[RealPhoto] | None = None, **generation):
    """A :class:`vlmstudy.tasks.Table`: one row per photo, our caption, then each model's caption.
    ``generation``: decoding settings for :func:`vlmstudy.tasks.caption_batch` (``max_new_tokens=30``)."""
    from .tasks import Table, caption_batch

    photos, models = _photo_list(photos), _models(models)
    columns = [caption_batch([p.image for p in photos], model=m, progress=False, **generation)
               for m in models.values()]
    rows = [[p.name, p.caption] + [c[i] for c in columns] for i, p in enumerate(photos)]
    return Table(["photo", "written by a person"] + list(models), rows)


def question_table(models, photos: Sequence[RealPhoto] | None = None, mark: bool = False, **generation):
    """A :class:`vlmstudy.tasks.Table`: one row per (photo, question), our short answer, then each
    model's answer (:func:`vlmstudy.tasks.answer_batch`, the model family's own prompt format).

    Models answer one after the other (each answers every question before the next starts), so a
    cache that keeps one large model at a time loads each once. mark: put a ``✓`` after each
    answer that says ours by :func:`vlmstudy.evaluation.answer_matches` (the VQA normalisation,
    the answer word inside a sentence): a reading aid on a handful of photos, not a score.
    """
    from .evaluation import answer_matches
    from .tasks import Table, answer_batch

    photos, models = _photo_list(photos), _models(models)
    pairs = [(p, q, a) for p in photos for q, a in p.questions]
    columns = [answer_batch([p.image for p, _, _ in pairs], [q for _, q, _ in pairs], model=m, progress=False,
                            **generation) for m in models.values()]
    if mark:
        columns = [[f"{said} ✓" if answer_matches(said, a) else said for said, (_, _, a) in zip(c, pairs)]
                   for c in columns]
    rows = [[p.name, q, a] + [c[i] for c in columns] for i, (p, q, a) in enumerate(pairs)]
    return Table(["photo", "question", "our answer"] + list(models), rows)
