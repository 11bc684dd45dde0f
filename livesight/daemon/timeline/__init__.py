"""The daemon's side of the timeline: capture (entries and keyframes from the frame path) and caption backfill."""
