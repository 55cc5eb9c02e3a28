"""Video evaluation: DAVIS-layout folders, the DAVIS J&F metrics, and `samkit eval-video`."""
