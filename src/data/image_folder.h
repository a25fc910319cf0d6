/* A folder of PNG and JPEG images, searched recursively (names ending .png, .jpg, .jpeg in any case;
 * names starting with '.' are skipped, as are other files such as Tiny-ImageNet's *_boxes.txt).
 *
 * Order: files sorted by their path relative to the folder (byte order), so the data set and hence the
 * shuffle do not depend on the file system. Classes, as torchvision's ImageFolder: the sorted names of
 * the first-level sub-folders; an image's label is the one of the sub-folder it lies under, at any depth.
 * So tiny-imagenet-200/train (train/<wnid>/images/<name>.JPEG) has its 200 wnids as classes as it is. When
 * any image lies directly in the folder, the data set is unlabelled.
 *
 * Every image is decoded once, converted to the target channels, cover-resized and centre-cropped to the
 * target size (data/resize.h) in parallel over files; results do not depend on the thread count. An
 * unreadable image is skipped and counted (Dataset.n_skipped, .skipped_first), or with options->strict
 * makes the whole open fail. A target size or channel count of 0 takes the first readable image's. */
#ifndef DIFFUSE_DATA_IMAGE_FOLDER_H
#define DIFFUSE_DATA_IMAGE_FOLDER_H

#include "core/error.h"
#include "data/dataset.h"

int image_folder_read(Dataset *ds, const char *root, const DatasetOptions *options, Error *err);

#endif
