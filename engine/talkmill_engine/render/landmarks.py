"""Named landmark index lists of mediapipe's 478-point face mesh (pure data).

Lips and lids are classified by these explicit lists, never by polygon tests: on a closed-mouth photo the
upper and lower inner-lip points coincide, and only the topology tells them apart.
Curves run from one corner to the other, in the same direction for upper and lower.
"""

from __future__ import annotations

LIP_OUTER_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIP_OUTER_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
LIP_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIP_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
MOUTH_CORNERS = (61, 291)
INNER_CORNERS = (78, 308)
# Crowded into the mouth's corners, between the outer and the inner corner: so close to them that their thin
# triangles fold over when the mouth opens or smiles. The warp leaves them out (they still move).
CORNER_SEAM = (76, 306, 62, 292)
# The lips' body between the contours: moves with the lip it belongs to.
UPPER_LIP_BODY = [42, 183, 41, 38, 72, 12, 302, 268, 271, 407, 74, 73, 11, 303, 304, 184, 408, 62, 292, 272]
LOWER_LIP_BODY = [96, 89, 179, 86, 15, 316, 403, 319, 325, 77, 90, 180, 85, 16, 315, 404, 320, 307]

# Eyes, from the outer corner to the inner corner (image-left eye first).
EYES = [
    {"upper": [33, 246, 161, 160, 159, 158, 157, 173, 133], "lower": [33, 7, 163, 144, 145, 153, 154, 155, 133],
     "crease": [226, 247, 30, 29, 27, 28, 56, 190, 243], "brow": [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]},
    {"upper": [263, 466, 388, 387, 386, 385, 384, 398, 362], "lower": [263, 249, 390, 373, 374, 380, 381, 382, 362],
     "crease": [446, 467, 260, 259, 257, 258, 286, 414, 463], "brow": [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]},
]
IRIS = list(range(468, 478))
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
NOSE = [1, 2, 4, 5, 6, 19, 94, 168, 195, 197, 98, 327, 129, 358, 49, 279, 64, 294, 48, 278, 115, 344]
CHIN = 152
NOSE_TIP = 1
FOREHEAD = 10

UPPER_LIP = set(LIP_OUTER_UPPER + LIP_INNER_UPPER + UPPER_LIP_BODY) - set(MOUTH_CORNERS) - set(INNER_CORNERS)
LOWER_LIP = set(LIP_OUTER_LOWER + LIP_INNER_LOWER + LOWER_LIP_BODY) - set(MOUTH_CORNERS) - set(INNER_CORNERS)
# Inner-lip loop (upper corner to corner, then lower back): the mouth opening's outline.
INNER_LOOP = LIP_INNER_UPPER + LIP_INNER_LOWER[-2:0:-1]
