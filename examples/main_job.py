"""The main job: joblite on real-sized data, next to joblib (grows as features land)."""

import joblite

print("joblite", joblite.__version__)
