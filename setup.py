"""tfdldl: DLDL-v2 facial age and attractiveness estimation on TensorFlow / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="tfdldl",
    version="0.1.0",
    description=(
        "DLDL-v2 (label distribution learning + expectation regression) for facial age "
        "and attractiveness estimation, trained with tf.distribute and served with "
        "TensorFlow Serving"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfdldl", "tfdldl.*", "data_prep", "data_prep.*"]),
    include_package_data=True,
    package_data={"tfdldl": ["assets/*"]},
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.3,<4",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "mtcnn>=1.0,<2",
        "lz4>=4",
        "google-crc32c>=1.5",
        "pyyaml>=6",
        "absl-py>=2",
        "tqdm>=4.60",  # progress bars of predict and evaluate
        "tensorboard>=2.16",  # tfdldl.train's TensorBoard logs (tensorflow no longer pulls it in)
    ],
    extras_require={
        "report": ["matplotlib>=3.7"],
        "serving": ["tensorflow-serving-api>=2.16,<3"],
        # data_prep.build --runner beam (data_prep/beam_pipeline.py); about 20 packages
        "beam": ["apache-beam>=2.77,<3"],
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",  # the suite on 2 workers: 14 instead of 23 minutes on 2 cores
            "matplotlib>=3.7",
            "pillow>=10",  # the decoder tests write GIF/WebP/EXIF files with it
            "tensorflow-serving-api>=2.16,<3",
        ],
    },
    entry_points={
        "console_scripts": [
            "tfdldl-build=data_prep.build:run",
            "tfdldl-train=tfdldl.train:run",
            "tfdldl-evaluate=tfdldl.evaluate:run",
            "tfdldl-predict=tfdldl.predict:run",
        ]
    },
)
