from oodida_edge._worker import main

main()
