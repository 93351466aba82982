"""The viewer's panels. Each is a class built once into a DearPyGui parent (`build`) and refreshed
from the app's state once per GUI frame (`tick`); callbacks write into the app, never render."""
