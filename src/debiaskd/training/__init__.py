"""Models and the training loop: teachers, students, bias-only models, objectives, distillation."""
