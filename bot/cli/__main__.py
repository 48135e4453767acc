from watchfloor.bot.cli import main

main()
