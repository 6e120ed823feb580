from setuptools import find_packages, setup

setup(
    name="advtext",
    version="0.1.0",
    description="Text classification with adversarial (FGSM, FGM, PGD) and virtual adversarial (VAT) "
                "training on the embedding layer, in TensorFlow / tf-keras",
    python_requires=">=3.11",
    packages=find_packages(include=["model", "model.*", "dataset", "dataset.*", "trainer", "trainer.*"]),
    py_modules=["train"],
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        "tensorflow-text==2.21.*",
        "tensorboard==2.21.*",
        "transformers>=4.57,<5",
        "safetensors",
        "pyyaml>=6",
        "numpy",
        "snownlp==0.12.3",
    ],
    extras_require={"test": ["pytest>=8"]},
)
