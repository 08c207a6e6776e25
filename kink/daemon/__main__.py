from kink.daemon.main import main

main()
