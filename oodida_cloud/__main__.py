from oodida_cloud._worker import main

main()
