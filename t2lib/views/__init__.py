"""What a reader sees: all plotting (`plots`), figure files named after the paper's (`figures`), the
expert explorer (notebook 07), the SVD inspection study (notebook 01), the paper's tables (`paper`)."""
