from kink_privsep.main import main

main()
