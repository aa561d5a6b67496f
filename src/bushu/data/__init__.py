"""The data layer: every command reads labelled data from disk through here.

    suffixes.py  the one table of file suffixes per kind (image, text, audio, arrays)
    images.py    open_image: the one image decoder (transparency on white, typed errors)
    folders.py   scan_folder + LabelledFolder: ``DIR/<class>/<file>`` of images, texts or clips
    labels.py    match_classes: class folders -> the model's output indices
    arrays.py    image folders as model inputs in memory (calibration, accuracy, fine-tuning)
    reader.py    the Reader protocol and create_reader(kind, root): where other layouts plug in

A reader is a sequence of (source, target) pairs with ``classes``; a folder per class gives class
indices as targets. Detection annotations (COCO/YOLO/VOC) are another reader of the same protocol
whose targets are the boxes of one image, registered in reader.READERS.
"""
