"""Stage `imagenet`: one cell of the ImageNet family (VGG16 / ResNet-50 at 80%, protocol §2.3-§3.2, §5, §7.2).

Run under torchrun, one process per GPU (gloo on CPU), e.g.

\b
torchrun --standalone --nproc-per-node 8 stages/imagenet.py --arch resnet50 --experiment table1 --method rigl --init dense
"""
from sparsebench.cli import imagenet_command

main = imagenet_command(__doc__)

if __name__ == "__main__":
    main()
